// Package pki is ctrl-exec's certificate authority and the formats around it:
// RSA keys, CSRs, issuing certificates, the ca.serial counter, serial number
// spellings and OpenSSL-style dates.
//
// Everything is done with crypto/x509; no openssl process is run. The files
// written are the ones the Perl ctrl-exec (which drives openssl) reads and
// writes, so a Go control host and a Perl one can share /etc/ctrl-exec.
package pki
