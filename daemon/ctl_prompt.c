/* ctl_prompt.c - guardctl prompt (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_prompt(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl prompt: not built yet\n"); return 1; }
