build-fix/model/model.o: model/model.c model/errmsg.h model/model.h \
 model/weights.h model/safetensors.h model/sha256.h
model/errmsg.h:
model/model.h:
model/weights.h:
model/safetensors.h:
model/sha256.h:
