build-fix/daemon/mockbroker.o: daemon/mockbroker.c \
 daemon/../model/errmsg.h daemon/mockbroker.h
daemon/../model/errmsg.h:
daemon/mockbroker.h:
