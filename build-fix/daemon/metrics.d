build-fix/daemon/metrics.o: daemon/metrics.c daemon/metrics.h \
 daemon/metrics_internal.h daemon/procstats.h
daemon/metrics.h:
daemon/metrics_internal.h:
daemon/procstats.h:
