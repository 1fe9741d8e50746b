build-fix/model/sha256.o: model/sha256.c model/sha256.h
model/sha256.h:
