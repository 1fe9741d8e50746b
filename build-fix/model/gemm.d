build-fix/model/gemm.o: model/gemm.c model/blis_quiet.h \
 /usr/include/x86_64-linux-gnu/blis-openmp/blis.h model/gemm.h \
 model/ops.h model/kvcache.h model/transformer.h model/model.h \
 model/weights.h
model/blis_quiet.h:
/usr/include/x86_64-linux-gnu/blis-openmp/blis.h:
model/gemm.h:
model/ops.h:
model/kvcache.h:
model/transformer.h:
model/model.h:
model/weights.h:
