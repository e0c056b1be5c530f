/*
 * fault.h - fault injection for tests: a named site in the code can be made to fail.
 *
 * A site is a call cairn_fault("name") on a path whose failure a test wants to provoke (a
 * record update that reports an unknown outcome, a write that fails, ...); it returns true when
 * the site is armed and this is the pass chosen to fail, and the code then behaves as if the
 * failure had happened.  Sites are armed by a test with cairn_fault_arm(), or for a whole
 * process from the environment: CAIRN_FAULTS="name=N[,name=N...]" fails the Nth pass of each
 * named site (N counts from 1; "name=N+" fails the Nth and every later pass).
 *
 * Unarmed (always, in production), a site costs a pthread_once() check and one relaxed atomic
 * load.
 */
#ifndef CAIRN_COMMON_FAULT_H
#define CAIRN_COMMON_FAULT_H

#include <stdbool.h>

#define CAIRN_FAULT_SITES 16u

/* Whether this pass of site should fail. */
bool cairn_fault(const char *site);
/* Fail the nth pass from now of site (1: the next one); every pass from it on if sticky.
 * Returns false if the table of armed sites is full. */
bool cairn_fault_arm(const char *site, unsigned nth, bool sticky);
/* Disarm every site. */
void cairn_fault_clear(void);

#endif
