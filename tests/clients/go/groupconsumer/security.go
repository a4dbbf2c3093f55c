package main

// TLS and SASL options shared by both modes:
//
//	-tls-ca FILE            speak TLS, trusting the CAs in FILE (PEM)
//	-tls-cert F -tls-key K  present this client certificate (mutual TLS)
//	-sasl MECH -user U -password P   authenticate with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
//	-sasl OAUTHBEARER -token-file F  authenticate with the JWT in F

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

var (
	tlsCA    = flag.String("tls-ca", "", "CA certificates (PEM): connect with TLS")
	tlsCert  = flag.String("tls-cert", "", "client certificate (PEM)")
	tlsKey   = flag.String("tls-key", "", "client key (PEM)")
	saslMech = flag.String("sasl", "", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
	tokenFile = flag.String("token-file", "", "OAUTHBEARER: file holding the JWT")
	user     = flag.String("user", "", "SASL user")
	password = flag.String("password", "", "SASL password")
)

// securityOpts turns the flags into client options; it exits on a bad flag.
func securityOpts() []kgo.Opt {
	var opts []kgo.Opt
	if *tlsCA != "" {
		pem, err := os.ReadFile(*tlsCA)
		if err != nil {
			fail("tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fail("tls-ca: no certificate in %s", *tlsCA)
		}
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if *tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
			if err != nil {
				fail("tls-cert: %v", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch *saslMech {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: *user, Pass: *password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: *user, Pass: *password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: *user, Pass: *password}.AsSha512Mechanism()))
	case "OAUTHBEARER":
		token, err := os.ReadFile(*tokenFile)
		if err != nil {
			fail("token-file: %v", err)
		}
		opts = append(opts, kgo.SASL(oauth.Auth{Token: strings.TrimSpace(string(token))}.AsMechanism()))
	default:
		fail("sasl: unknown mechanism %s", *saslMech)
	}
	return opts
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ERR "+format+"\n", args...)
	os.Exit(2)
}
