#pragma once
#include <Eigen/Dense>
#include <cstdint>

namespace ess {

using Matrix = Eigen::MatrixXd;  // column-major, float64
using Vector = Eigen::VectorXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Index = Eigen::Index;

}  // namespace ess
