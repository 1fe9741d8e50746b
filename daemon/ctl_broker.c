/* ctl_broker.c - guardctl broker (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_broker(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl broker: not built yet\n"); return 1; }
