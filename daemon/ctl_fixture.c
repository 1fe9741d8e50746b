/* ctl_fixture.c - guardctl fixture (placeholder until the subcommand lands). */
#include <stdio.h>
#include "ctl.h"
int ctl_fixture(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "guardctl fixture: not built yet\n"); return 1; }
