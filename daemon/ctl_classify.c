/* ctl_classify.c - guardctl classify (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_classify(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl classify: not built yet\n"); return 1; }
