build-fix/model/errmsg.o: model/errmsg.c model/errmsg.h
model/errmsg.h:
