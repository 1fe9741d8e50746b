/* ctl_tokenize.c - guardctl tokenize (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_tokenize(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl tokenize: not built yet\n"); return 1; }
