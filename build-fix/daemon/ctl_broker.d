build-fix/daemon/ctl_broker.o: daemon/ctl_broker.c daemon/ctl.h \
 daemon/mockbroker.h
daemon/ctl.h:
daemon/mockbroker.h:
