/* How many threads a call uses. Never changes the OpenMP state of the
   caller: the count is passed to each parallel region as a clause. */
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

#include "internal.h"

int qkv_thread_count(int requested, int64_t tasks)
{
    int64_t n = requested;
    if (n <= 0) {
#if QKV_HAVE_OPENMP
        n = omp_get_max_threads();
#else
        n = 1;
#endif
    }
    if (n > tasks)
        n = tasks;
    return n < 1 ? 1 : (int)n;
}
