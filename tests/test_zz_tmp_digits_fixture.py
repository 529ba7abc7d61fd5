def test_digits(digits_features):
    import numpy as np
    for k, (a, ya, b, yb) in digits_features.items():
        print(k, a.shape, a.dtype, ya.shape, ya.dtype, b.shape, yb.shape, np.bincount(yb))
