/* tsan_c11threads.c - ISO C11 threads (thrd_, mtx_, cnd_, call_once) over
 * the pthread calls ThreadSanitizer intercepts; linked into every program of
 * a SANITIZE=thread build only (Makefile).
 *
 * Why: librdkafka runs its threads and locks through glibc's C11 threads,
 * which call glibc's pthread internals directly, past TSan's interceptors
 * (GCC 12's and clang 14's TSan have none for thrd_create). Every librdkafka
 * thread then ran without TSan's thread state and crashed in its first
 * malloc, and its locks were invisible, so anything handed between our
 * threads through librdkafka would have been reported as a race. Defined in
 * the executable, these interpose glibc's for librdkafka as well. glibc's
 * thrd_t, mtx_t, cnd_t and once_flag are its pthread types in other clothes
 * (same size and layout), which is what makes the casts below sound.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is not pthread_t");
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is not pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is not pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is not pthread_once_t");

static int thrd_status(int err) {
    return err == 0 ? thrd_success : err == ENOMEM ? thrd_nomem : err == EBUSY ? thrd_busy
           : err == ETIMEDOUT ? thrd_timedout : thrd_error;
}

typedef struct {
    thrd_start_t fn;
    void *arg;
} Start;

static void *start(void *arg) {
    Start s = *(Start *)arg;
    free(arg);
    return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg) {
    Start *s = malloc(sizeof *s);
    if (!s) return thrd_nomem;
    *s = (Start){fn, arg};
    pthread_t t;
    int err = pthread_create(&t, NULL, start, s);
    if (err) {
        free(s);
        return thrd_status(err);
    }
    *thr = (thrd_t)t;
    return thrd_success;
}

int thrd_join(thrd_t thr, int *res) {
    void *r = NULL;
    int err = pthread_join((pthread_t)thr, &r);
    if (!err && res) *res = (int)(intptr_t)r;
    return thrd_status(err);
}

int thrd_detach(thrd_t thr) { return thrd_status(pthread_detach((pthread_t)thr)); }

int mtx_init(mtx_t *m, int type) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int err = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return thrd_status(err);
}
int mtx_lock(mtx_t *m) { return thrd_status(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return thrd_status(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts) {
    return thrd_status(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}
int mtx_unlock(mtx_t *m) { return thrd_status(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return thrd_status(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return thrd_status(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return thrd_status(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m) {
    return thrd_status(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
/* C11's timed wait is on CLOCK_REALTIME, as pthread_cond_timedwait's default. */
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts) {
    return thrd_status(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

void call_once(once_flag *flag, void (*fn)(void)) { pthread_once((pthread_once_t *)flag, fn); }
