build-fix/model/kvcache.o: model/kvcache.c model/kvcache.h \
 model/transformer.h model/model.h model/weights.h
model/kvcache.h:
model/transformer.h:
model/model.h:
model/weights.h:
