"""Closed-form detection theory for a pattern in white Gaussian noise: SNR, d', the matched filter's ROC."""

from jaxconv.lab._theory import amplitude_for_snr_db as amplitude_for_snr_db
from jaxconv.lab._theory import d_prime as d_prime
from jaxconv.lab._theory import positive_prevalence as positive_prevalence
from jaxconv.lab._theory import snr_db as snr_db
from jaxconv.lab._theory import theoretical_detection as theoretical_detection
from jaxconv.lab._theory import theoretical_roc as theoretical_roc
