/* ctl_logits.c - guardctl logits (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_logits(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl logits: not built yet\n"); return 1; }
