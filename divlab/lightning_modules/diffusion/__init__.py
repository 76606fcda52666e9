"""Diffusion (DDPM, DDIM) and score-based SDE math as pure tensor functions; networks are callables
model(x_t, t) → tensor shaped like x_t."""
from divlab.lightning_modules.diffusion.chunked import check_sample_chunk, in_chunks
from divlab.lightning_modules.diffusion.ddpm import (
    DECODERS,
    REVERSE_LOG_VARIANCES,
    ReverseProcess,
    diffusion_loss,
    p_mean_variance,
    predict_x0_eps,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
    signal_and_noise_scales,
)
from divlab.lightning_modules.diffusion.ddpm_sampling import AncestralSampler, DDIMSampler, ddim_timesteps
from divlab.lightning_modules.diffusion.fixed_noise import loss_on_fixed_noise
from divlab.lightning_modules.diffusion.ode import ODESolver
from divlab.lightning_modules.diffusion.parameterization import TARGETS, prediction_to_x0_eps, regression_target
from divlab.lightning_modules.diffusion.schedules import (
    BETA_SCHEDULES,
    NoiseSchedule,
    betas_for_alpha_bar,
    cosine_alpha_bar,
    cosine_betas,
    linear_betas,
    make_schedule,
    noise_schedule,
)
from divlab.lightning_modules.diffusion.score_matching import dsm_loss, probability_flow_drift, score
from divlab.lightning_modules.diffusion.sde import VESDE, VPSDE, marginal_mean_std
from divlab.lightning_modules.diffusion.sde_likelihood import TRACE_ESTIMATORS, ode_log_likelihood, uniform_dequantize
from divlab.lightning_modules.diffusion.sde_sampling import MarginalDDIM, PredictorCorrector, ProbabilityFlowSampler
from divlab.lightning_modules.diffusion.vlb import (
    VariationalBound,
    prior_kl,
    sampled_variational_bound,
    variational_bound,
)
