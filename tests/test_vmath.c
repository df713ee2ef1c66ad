// test_vmath.c: the vectorisable float exp/erf of core/vmath.h against libm
// in double over their whole useful range.
#include <math.h>

#include "test_util.h"
#include "vmath.h"

int main(void) {
  double worst_exp = 0, worst_erf = 0;
  for (double x = -87.0; x <= 87.0; x += 1e-3) {
    double e = exp((double)(float)x);
    double rel = fabs((double)lr_expf_fast((float)x) - e) / e;
    if (!(rel <= worst_exp)) worst_exp = rel;
  }
  for (double x = -10.0; x <= 10.0; x += 1e-5) {
    double ab = fabs((double)lr_erff_fast((float)x) - erf((double)(float)x));
    if (!(ab <= worst_erf)) worst_erf = ab;
  }
  t_check(worst_exp < 3e-7, "expf_fast relative error %.3g < 3e-7 on [-87, 87]", worst_exp);
  t_check(worst_erf < 7e-7, "erff_fast absolute error %.3g < 7e-7 on [-10, 10]", worst_erf);
  t_check(lr_erff_fast(0.0f) == 0.0f && lr_erff_fast(-0.0f) == 0.0f, "erf(0) = 0");
  t_check(lr_expf_fast(-1000.0f) > 0.0f && lr_expf_fast(-1000.0f) < 1e-37f, "exp clamps below");
  t_check(isfinite(lr_expf_fast(1000.0f)), "exp clamps above");
  return t_done();
}
