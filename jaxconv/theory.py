"""Closed-form detection theory: a pattern in white Gaussian noise (SNR, d', the matched filter's ROC), and in
coloured noise (the whitened matched filter from a measured autocovariance, a linear detector's d')."""

from jaxconv.lab._theory import amplitude_for_snr_db as amplitude_for_snr_db
from jaxconv.lab._theory import autocovariance as autocovariance
from jaxconv.lab._theory import d_prime as d_prime
from jaxconv.lab._theory import linear_snr as linear_snr
from jaxconv.lab._theory import positive_prevalence as positive_prevalence
from jaxconv.lab._theory import snr_db as snr_db
from jaxconv.lab._theory import spectrum_slope as spectrum_slope
from jaxconv.lab._theory import theoretical_detection as theoretical_detection
from jaxconv.lab._theory import theoretical_roc as theoretical_roc
from jaxconv.lab._theory import whitened_matched_filter as whitened_matched_filter
