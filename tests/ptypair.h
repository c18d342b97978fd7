/* Tests: a pair of connected pseudo-terminals that libserialport can open
 * (both ends real libserialport ports, like a null-modem cable), with a relay
 * thread in between that can corrupt a fraction of the bytes (line noise).
 * Needs ptyshim.c in the same binary. */
#ifndef PATCTL_TESTS_PTYPAIR_H
#define PATCTL_TESTS_PTYPAIR_H

#include <pthread.h>
#include <stdint.h>

typedef struct ptypair {
    int ma, sa, mb, sb;          /* masters and slaves of the two ptys */
    char link_a[96], link_b[96]; /* symlinks in /tmp to the slaves */
    char port_a[128], port_b[128]; /* the names to give libserialport */
    double corrupt;              /* fraction of relayed bytes changed */
    uint64_t rng, corrupted, relayed;
    volatile int stop;
    pthread_t relay;
} ptypair;

/* 0 or -1 (no ptys here: skip). */
int ptypair_open(ptypair *p, double corrupt, uint64_t seed);
void ptypair_close(ptypair *p);

#endif
