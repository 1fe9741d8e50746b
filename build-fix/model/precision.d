build-fix/model/precision.o: model/precision.c model/weights.h
model/weights.h:
