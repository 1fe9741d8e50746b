build-fix/model/wkernels.o: model/wkernels.c model/bf16.h model/ops.h \
 model/kvcache.h model/transformer.h model/model.h model/weights.h \
 model/wkernels.h
model/bf16.h:
model/ops.h:
model/kvcache.h:
model/transformer.h:
model/model.h:
model/weights.h:
model/wkernels.h:
