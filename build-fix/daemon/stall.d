build-fix/daemon/stall.o: daemon/stall.c daemon/stall.h
daemon/stall.h:
