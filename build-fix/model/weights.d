build-fix/model/weights.o: model/weights.c model/bf16.h model/gemm.h \
 model/weights.h model/wkernels.h
model/bf16.h:
model/gemm.h:
model/weights.h:
model/wkernels.h:
