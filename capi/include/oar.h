/*
 * oar.h: the C ABI of Oar's Predictor (crate `oar-capi`, library
 * `liboar_capi.so`). Hand-written; keep in sync with capi/src/lib.rs.
 *
 * A predictor serves a static model saved by `oar_jit::to_static(..).save(..)`
 * (a directory holding model.json and weights.safetensors). The model is
 * specialized to the input shapes it was traced with, except that a model
 * saved with a dynamic batch takes any batch size (first dim).
 *
 *     OarPredictor* p = oar_predictor_create("runs/mnist/model", 0);
 *     if (!p) { fprintf(stderr, "oar: %s\n", oar_last_error()); return 1; }
 *     int64_t shape[4] = {500, 1, 28, 28};
 *     if (oar_predictor_set_input(p, "input0", images, shape, 4) != OAR_OK ||
 *         oar_predictor_run(p) != OAR_OK ||
 *         oar_predictor_get_output(p, 0, logits, 500 * 10) != OAR_OK)
 *         fprintf(stderr, "oar: %s\n", oar_last_error());
 *     oar_predictor_destroy(p);
 *
 * Conventions:
 *  - Functions returning int return OAR_OK (0) on success and one of the
 *    nonzero OAR_ERR_* codes on failure; oar_predictor_create,
 *    oar_predictor_clone and oar_predictor_input_name return NULL on failure.
 *    The reason is then in oar_last_error().
 *  - Every pointer is checked for NULL; shapes and buffer sizes are checked
 *    against the model before any data is read or written.
 *  - Errors never unwind into C: an internal panic is caught and reported as
 *    OAR_ERR_PANIC.
 *  - A predictor must not be used by two threads at once; for parallel
 *    serving give each thread its own oar_predictor_clone (they share the
 *    weights). Different predictors may run concurrently.
 */
#ifndef OAR_H
#define OAR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Success. */
#define OAR_OK 0
/** A bad argument: a NULL pointer, a negative dimension, a shape other than
 *  the traced one, an unknown input name, an output index out of range, a
 *  wrong element type, or a call out of order (outputs before a run). */
#define OAR_ERR_INVALID_ARGUMENT 1
/** A caller buffer is smaller than what would be written into it. */
#define OAR_ERR_BUFFER_TOO_SMALL 2
/** The library failed otherwise: reading or validating the model files, or a
 *  kernel error while running. */
#define OAR_ERR_RUNTIME 3
/** An internal bug (a Rust panic, caught). Destroy the predictor. */
#define OAR_ERR_PANIC 4

/** A loaded model with its input and output slots (opaque). */
typedef struct OarPredictor OarPredictor;

/**
 * This thread's last error message, or "" if the last fallible call on this
 * thread succeeded. Never NULL. The string is owned by the library and valid
 * until the next oar_* call on the same thread (copy it to keep it).
 */
const char* oar_last_error(void);

/**
 * Loads, validates and compiles the model saved in the directory
 * `model_dir`. `threads > 0` sets the kernel thread count (process-wide: it
 * applies to every predictor); `threads <= 0` keeps the current setting (by
 * default, all cores). Returns NULL on failure (missing directory, malformed
 * files, ...).
 */
OarPredictor* oar_predictor_create(const char* model_dir, int threads);

/**
 * A new predictor over the same compiled model; the weights are shared, not
 * copied, and the clone has its own inputs and outputs (copied from
 * `predictor`'s current ones). NULL on failure.
 */
OarPredictor* oar_predictor_clone(const OarPredictor* predictor);

/**
 * Frees a predictor; NULL is accepted and ignored. Leaves oar_last_error()
 * unchanged. The weights are freed with the last predictor sharing them.
 */
void oar_predictor_destroy(OarPredictor* predictor);

/** Writes the number of model inputs to `*count`. */
int oar_predictor_input_count(const OarPredictor* predictor, size_t* count);

/**
 * The name of input `index` (models saved by to_static name theirs
 * "input0", "input1", ...). Owned by the predictor, valid while it lives.
 * NULL if `index` is out of range.
 */
const char* oar_predictor_input_name(const OarPredictor* predictor, size_t index);

/**
 * The shape input `name` was traced with. Writes the rank to `*rank`
 * (always, so a call with capacity 0 asks for it) and, if
 * `capacity >= rank`, the dimensions to `shape[0..rank)`; otherwise returns
 * OAR_ERR_BUFFER_TOO_SMALL.
 */
int oar_predictor_input_shape(const OarPredictor* predictor, const char* name, int64_t* shape, size_t capacity,
                              size_t* rank);

/** Writes the number of model outputs to `*count` (known before any run). */
int oar_predictor_output_count(const OarPredictor* predictor, size_t* count);

/**
 * Copies `data` into input `name`. `shape` holds `rank` dimensions (NULL is
 * allowed when rank is 0) and must equal the traced shape (any first dim for a dynamic-batch model); `data` is
 * row-major float32 with shape[0] * ... * shape[rank-1] elements. The name
 * and shape are checked before `data` is read.
 */
int oar_predictor_set_input(OarPredictor* predictor, const char* name, const float* data, const int64_t* shape,
                            size_t rank);

/** Runs the model on the inputs set so far; every input must have been set. */
int oar_predictor_run(OarPredictor* predictor);

/**
 * The shape of output `index` of the last successful run, written like
 * oar_predictor_input_shape: the rank to `*rank` always, the dimensions to
 * `shape[0..rank)` if `capacity >= rank` (else OAR_ERR_BUFFER_TOO_SMALL).
 * Fails with OAR_ERR_INVALID_ARGUMENT before the first successful run.
 */
int oar_predictor_output_shape(const OarPredictor* predictor, size_t index, int64_t* shape, size_t capacity,
                               size_t* rank);

/**
 * Copies output `index` of the last successful run (row-major float32) into
 * `data`, which holds `capacity` floats. If the output has more elements,
 * returns OAR_ERR_BUFFER_TOO_SMALL and writes nothing.
 */
int oar_predictor_get_output(const OarPredictor* predictor, size_t index, float* data, size_t capacity);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OAR_H */
