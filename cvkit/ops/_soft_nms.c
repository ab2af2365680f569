/* Soft-NMS (Bodla et al. 2017) as one compiled loop: cvkit.ops.soft_nms calls it when this
 * module was built (an optional extension; without it the NumPy loop runs).
 *
 * NumPy pays a few microseconds per call, and soft-NMS selects its boxes one after another:
 * on 1,000 boxes round 5 objects about 90 of them, each an IoU row and a few array calls. Here
 * a selection is one pass over the boxes still in the running that decays their scores, drops
 * those below the threshold and finds the next best, as torchvision's hard NMS does.
 *
 * Every value is computed with the float operations, in the order, of cvkit.ops.iou and of the
 * NumPy loop, so that both give the same bits: build without FMA contraction
 * (-ffp-contract=off). The caller passes only inputs on which the two agree without special
 * cases: finite scores >= 0 and boxes with x2 >= x1, y2 >= y1 and finite areas.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Defines soft_nms_<T>(...): boxes [n, 4] xyxy, scores [n], labels [n] or NULL; writes the
 * selected indices and their scores, in selection order, to keep and kept; returns how many.
 * alive is scratch of n entries: the boxes still in the running, in index order, so that the
 * first of equal scores is the one of smallest index. */
#define DEFINE_SOFT_NMS(T)                                                                      \
    static Py_ssize_t soft_nms_##T(const T *boxes, const T *scores, const int64_t *labels,      \
                                   Py_ssize_t n, int gaussian, T iou_threshold, T minus_sigma,  \
                                   T score_threshold, T eps, int64_t *keep, T *kept,            \
                                   Py_ssize_t *alive, T *current, T *areas) {                   \
        Py_ssize_t count = 0, left = 0, best = -1;                                              \
        for (Py_ssize_t i = 0; i < n; i++) {                                                    \
            const T *b = boxes + 4 * i;                                                         \
            areas[i] = (b[2] - b[0]) * (b[3] - b[1]);                                           \
            current[i] = scores[i];                                                             \
            if (!(scores[i] < score_threshold)) {                                               \
                if (best < 0 || scores[i] > current[best]) best = i;                            \
                alive[left++] = i;                                                              \
            }                                                                                   \
        }                                                                                       \
        while (best >= 0) {                                                                     \
            const T *s = boxes + 4 * best;                                                      \
            keep[count] = best;                                                                 \
            kept[count++] = current[best];                                                      \
            Py_ssize_t next = -1, still = 0;                                                    \
            for (Py_ssize_t k = 0; k < left; k++) {                                             \
                Py_ssize_t j = alive[k];                                                        \
                if (j == best) continue;                                                        \
                if (labels == NULL || labels[j] == labels[best]) {                              \
                    const T *b = boxes + 4 * j;                                                 \
                    T w = (b[2] < s[2] ? b[2] : s[2]) - (b[0] > s[0] ? b[0] : s[0]);            \
                    T h = (b[3] < s[3] ? b[3] : s[3]) - (b[1] > s[1] ? b[1] : s[1]);            \
                    if (w > 0 && h > 0) { /* otherwise the IoU is 0 and the factor 1 */         \
                        T inter = w * h;                                                        \
                        T uni = (areas[j] + areas[best]) - inter;                               \
                        T iou = inter / (uni > eps ? uni : eps);                                \
                        T factor;                                                               \
                        if (gaussian) {                                                         \
                            T t = iou * iou;                                                    \
                            t = t / minus_sigma;                                                \
                            factor = (T)exp((double)t);                                         \
                        } else {                                                                \
                            factor = iou > iou_threshold ? (T)1 - iou : (T)1;                   \
                        }                                                                       \
                        current[j] *= factor;                                                   \
                        if (current[j] < score_threshold) continue;                             \
                    }                                                                           \
                }                                                                               \
                if (next < 0 || current[j] > current[next]) next = j;                           \
                alive[still++] = j;                                                             \
            }                                                                                   \
            left = still;                                                                       \
            best = next;                                                                        \
        }                                                                                       \
        return count;                                                                           \
    }

DEFINE_SOFT_NMS(float)
DEFINE_SOFT_NMS(double)

static int check_buffer(const Py_buffer *buf, const char *name, Py_ssize_t items, size_t size) {
    if (buf->len != items * (Py_ssize_t)size) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, buf->len,
                     items * (Py_ssize_t)size);
        return 0;
    }
    return 1;
}

/* soft_nms(boxes, scores, labels, double, gaussian, iou_threshold, sigma, score_threshold, eps,
 *          keep, kept) -> count
 * boxes, scores, kept: C-contiguous float32 (double false) or float64 buffers; labels: int64 or
 * None; keep: int64, n entries; kept: n entries. */
static PyObject *py_soft_nms(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer boxes, scores, labels = {0}, keep, kept;
    PyObject *labels_obj;
    int is_double, gaussian;
    double iou_threshold, sigma, score_threshold, eps;
    if (!PyArg_ParseTuple(args, "y*y*Oppddddw*w*", &boxes, &scores, &labels_obj, &is_double,
                          &gaussian, &iou_threshold, &sigma, &score_threshold, &eps, &keep,
                          &kept))
        return NULL;
    PyObject *result = NULL;
    int have_labels = labels_obj != Py_None;
    if (have_labels && PyObject_GetBuffer(labels_obj, &labels, PyBUF_SIMPLE) < 0) goto done;
    size_t size = is_double ? sizeof(double) : sizeof(float);
    Py_ssize_t n = scores.len / (Py_ssize_t)size;
    if (!check_buffer(&scores, "scores", n, size) || !check_buffer(&boxes, "boxes", 4 * n, size) ||
        !check_buffer(&kept, "kept", n, size) ||
        !check_buffer(&keep, "keep", n, sizeof(int64_t)) ||
        (have_labels && !check_buffer(&labels, "labels", n, sizeof(int64_t))))
        goto done;
    /* scratch: the boxes in the running, the current scores, the areas */
    void *scratch = malloc((size_t)(n > 0 ? n : 1) * (sizeof(Py_ssize_t) + 2 * size));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t *alive = scratch;
    char *values = (char *)(alive + n);
    const int64_t *label_values = have_labels ? labels.buf : NULL;
    Py_ssize_t count;
    Py_BEGIN_ALLOW_THREADS;
    if (is_double)
        count = soft_nms_double(boxes.buf, scores.buf, label_values, n, gaussian, iou_threshold,
                                -sigma, score_threshold, eps, keep.buf, kept.buf, alive,
                                (double *)values, (double *)values + n);
    else
        count = soft_nms_float(boxes.buf, scores.buf, label_values, n, gaussian,
                               (float)iou_threshold, -(float)sigma, (float)score_threshold,
                               (float)eps, keep.buf, kept.buf, alive, (float *)values,
                               (float *)values + n);
    Py_END_ALLOW_THREADS;
    free(scratch);
    result = PyLong_FromSsize_t(count);
done:
    PyBuffer_Release(&boxes);
    PyBuffer_Release(&scores);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&kept);
    if (have_labels && labels.obj != NULL) PyBuffer_Release(&labels);
    return result;
}

static PyMethodDef methods[] = {
    {"soft_nms", py_soft_nms, METH_VARARGS, "Soft-NMS on contiguous buffers (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_soft_nms", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__soft_nms(void) { return PyModule_Create(&module); }
