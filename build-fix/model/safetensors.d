build-fix/model/safetensors.o: model/safetensors.c model/errmsg.h \
 model/safetensors.h model/bf16.h
model/errmsg.h:
model/safetensors.h:
model/bf16.h:
