build-fix/model/config.o: model/config.c model/model.h model/weights.h
model/model.h:
model/weights.h:
