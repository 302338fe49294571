// The out-of-line parts of tests/test_helpers.h.
#include "test_helpers.h"

#include <Eigen/SVD>

namespace ess::test {

Vector jacobi_singular_values(const Matrix& A) { return Eigen::JacobiSVD<Matrix>(A).singularValues(); }

}  // namespace ess::test
