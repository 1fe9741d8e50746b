build-fix/daemon/queue.o: daemon/queue.c daemon/queue.h
daemon/queue.h:
