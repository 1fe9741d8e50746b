build-fix/daemon/procstats.o: daemon/procstats.c daemon/procstats.h
daemon/procstats.h:
