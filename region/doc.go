// Package region knows Kunming's administrative divisions (省, 市, 县, 乡镇, 村社区,
// with the NBS 12-digit codes) and the roster of whom and what warngate can reach
// in each: officials, residents, loudspeakers, screens and households visited by
// grid workers.
//
// It answers questions about areas and the people in them, and it is read-only once
// built. It must not send anything, decide who receives a warning (that is policy's
// job) or remember deliveries (that is the ledger's), and it imports nothing of
// warngate but package warning.
package region
