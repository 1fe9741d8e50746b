build-fix/daemon/guardctl.o: daemon/guardctl.c daemon/ctl.h
daemon/ctl.h:
