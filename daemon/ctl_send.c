/* ctl_send.c - guardctl send (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_send(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl send: not built yet\n"); return 1; }
