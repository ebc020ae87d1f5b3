/* winograd: 3x3 stride 1 pad 1 convolution by Winograd's minimal filtering F(2x2, 3x3), forward
 * and backward (ops-internal; conv.c dispatches here, see mdiff_wino_applies). */
#ifndef MDIFF_OPS_WINOGRAD_H
#define MDIFF_OPS_WINOGRAD_H

#include <stdint.h>

/* Nonzero where conv.c should use Winograd: 3x3 stride 1 pad 1, C -> OC channels on H x W. */
int mdiff_wino_applies(int C, int OC, int H, int W, int K, int stride, int pad);
int64_t mdiff_wino_work_floats(int B, int C, int H, int W, int OC);
/* out (B, OC, H, W) = conv3x3(inp (B, C, H, W), weight (OC, C, 3, 3)) + bias (OC, may be NULL) */
void mdiff_wino_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int B, int C, int H, int W, int OC, float *work);
/* dinp += (NULL: skipped), dweight +=, dbias += (NULL: skipped) */
void mdiff_wino_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                         float *work);

#endif
