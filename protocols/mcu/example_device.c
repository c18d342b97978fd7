/* The example device (see example_device.h).  Portable C99, no malloc. */
#include "protocols/mcu/example_device.h"

#include <math.h>

const char example_description[] =
    "{\"protocol\":1,\"model\":\"tanh-layer\",\"about\":\"analog layer y = tanh(W x + b) on a microcontroller\","
    "\"n_in\":4,\"n_out\":3,\"in_unit\":\"V\",\"out_unit\":\"V\",\"in_lo\":-1,\"in_hi\":1,"
    "\"simulated\":false,\"has_vjp\":false,\"blocks\":["
    "{\"name\":\"W\",\"unit\":\"V/V\",\"about\":\"gains\",\"rows\":3,\"cols\":4,\"lo\":-2,\"hi\":2,"
    "\"max_step\":0.5,\"safe\":0,\"init_lo\":-0.5,\"init_hi\":0.5},"
    "{\"name\":\"b\",\"unit\":\"V\",\"about\":\"offsets\",\"rows\":3,\"cols\":1,\"lo\":-1,\"hi\":1,"
    "\"max_step\":0.5,\"safe\":0,\"init_lo\":0,\"init_hi\":0}]}";

unsigned example_safe_calls;

static float W[EXAMPLE_N_OUT * EXAMPLE_N_IN], bias[EXAMPLE_N_OUT]; /* the "hardware" setting */

static int ex_run(void *user, uint64_t id, uint32_t batch, const float *theta, const float *x, float *y)
{
    (void)user;
    (void)id;
    for (int i = 0; i < EXAMPLE_N_OUT * EXAMPLE_N_IN; i++)
        W[i] = theta[i];
    for (int i = 0; i < EXAMPLE_N_OUT; i++)
        bias[i] = theta[EXAMPLE_N_OUT * EXAMPLE_N_IN + i];
    for (uint32_t s = 0; s < batch; s++)
        for (int o = 0; o < EXAMPLE_N_OUT; o++) {
            float a = bias[o];
            for (int i = 0; i < EXAMPLE_N_IN; i++)
                a += W[o * EXAMPLE_N_IN + i] * x[s * EXAMPLE_N_IN + i];
            y[s * EXAMPLE_N_OUT + o] = tanhf(a);
        }
    return 0;
}

static int ex_safe(void *user)
{
    (void)user;
    for (int i = 0; i < EXAMPLE_N_OUT * EXAMPLE_N_IN; i++)
        W[i] = 0;
    for (int i = 0; i < EXAMPLE_N_OUT; i++)
        bias[i] = 0;
    example_safe_calls++;
    return 0;
}

#define RX_BYTES (PT_RUN_HEAD + 4 * (EXAMPLE_N_THETA + EXAMPLE_MAX_BATCH * EXAMPLE_N_IN))
#define TX_BYTES 1024 /* >= 16 + 4 * 16 * 3 and the description + 16 */

static uint32_t rx[(RX_BYTES + 3) / 4], tx[TX_BYTES / 4];
static uint8_t fin[EXAMPLE_MTU + PT_OVERHEAD], fout[EXAMPLE_MTU + PT_OVERHEAD], have[8];

int example_device_init(pmcu *dev, int (*uart_read)(void *), int (*uart_write)(void *, const uint8_t *, size_t),
                        void *user)
{
    pmcu_config cfg;
    cfg.description_json = example_description;
    cfg.n_in = EXAMPLE_N_IN;
    cfg.n_out = EXAMPLE_N_OUT;
    cfg.n_theta = EXAMPLE_N_THETA;
    cfg.run = ex_run;
    cfg.make_safe = ex_safe;
    cfg.uart_read = uart_read;
    cfg.uart_write = uart_write;
    cfg.user = user;
    pmcu_buffers b;
    b.frame_in = fin;
    b.frame_out = fout;
    b.rx = (uint8_t *)rx;
    b.tx = (uint8_t *)tx;
    b.have = have;
    b.mtu = EXAMPLE_MTU;
    b.rx_cap = sizeof(rx);
    b.tx_cap = sizeof(tx);
    b.have_cap = sizeof(have);
    return pmcu_init(dev, &cfg, &b);
}
