build-fix/model/transformer.o: model/transformer.c model/errmsg.h \
 model/gemm.h model/weights.h model/kvcache.h model/transformer.h \
 model/model.h model/ops.h
model/errmsg.h:
model/gemm.h:
model/weights.h:
model/kvcache.h:
model/transformer.h:
model/model.h:
model/ops.h:
