build-fix/model/classifier.o: model/classifier.c model/errmsg.h \
 model/classifier.h model/conversation.h model/model.h model/weights.h \
 model/prompt.h model/tokenizer.h model/kvcache.h model/transformer.h \
 model/prefix_cache.h model/prompt_format.h model/verdict.h
model/errmsg.h:
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
model/kvcache.h:
model/transformer.h:
model/prefix_cache.h:
model/prompt_format.h:
model/verdict.h:
