build-fix/daemon/ctl_logits.o: daemon/ctl_logits.c daemon/ctl.h \
 model/model.h model/weights.h model/transformer.h model/model.h
daemon/ctl.h:
model/model.h:
model/weights.h:
model/transformer.h:
model/model.h:
