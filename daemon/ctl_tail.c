/* ctl_tail.c - guardctl tail (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_tail(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl tail: not built yet\n"); return 1; }
