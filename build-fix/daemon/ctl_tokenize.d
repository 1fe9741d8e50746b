build-fix/daemon/ctl_tokenize.o: daemon/ctl_tokenize.c daemon/ctl.h \
 model/tokenizer.h
daemon/ctl.h:
model/tokenizer.h:
