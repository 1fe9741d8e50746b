build-fix/daemon/event_mp.o: daemon/event_mp.c daemon/event_mp.h
daemon/event_mp.h:
