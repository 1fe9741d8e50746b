build-fix/daemon/offsets.o: daemon/offsets.c daemon/offsets.h
daemon/offsets.h:
