/* guardd - placeholder main until the daemon lands. */
#include <stdio.h>
int main(void) { fprintf(stderr, "guardd: not built yet\n"); return 1; }
