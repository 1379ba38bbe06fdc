// Package e2e holds warngate's browser tests: a gateway started in the test
// process, on the test Redis, driven through its web console and an
// official's page by headless Chromium (chromedp). It has no code of its own;
// screenshots of every page go to e2e/artifacts/.
package e2e
