build-fix/daemon/http.o: daemon/http.c daemon/metrics.h \
 daemon/metrics_internal.h
daemon/metrics.h:
daemon/metrics_internal.h:
