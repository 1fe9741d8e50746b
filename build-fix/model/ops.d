build-fix/model/ops.o: model/ops.c model/ops.h model/kvcache.h \
 model/transformer.h model/model.h model/weights.h
model/ops.h:
model/kvcache.h:
model/transformer.h:
model/model.h:
model/weights.h:
