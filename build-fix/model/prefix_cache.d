build-fix/model/prefix_cache.o: model/prefix_cache.c model/prefix_cache.h \
 model/kvcache.h model/transformer.h model/model.h model/weights.h
model/prefix_cache.h:
model/kvcache.h:
model/transformer.h:
model/model.h:
model/weights.h:
