// A real OpenID Connect provider (panva/oidc-provider) for login tests, on loopback only.
//
// Environment:
//   OIDC_MODULES_DIR    a directory holding node_modules/oidc-provider
//   OIDC_PORT           port on 127.0.0.1; the issuer is http://127.0.0.1:PORT
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI   the one client (PKCE S256 required);
//                       OIDC_REDIRECT_URI may list several, separated by spaces
//   OIDC_ACCOUNTS       optional JSON: login -> claims that replace the defaults for that login
//
// Any login/password is accepted by the development login form (devInteractions); the account's
// sub is the login, with email LOGIN@example.org (verified), a name and preferred_username.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = path.resolve(process.env.OIDC_MODULES_DIR);
const require = createRequire(path.join(modules, 'resolve-from-here.js'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: process.env.OIDC_REDIRECT_URI.split(' ').filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  cookies: { keys: [`test-only-${process.pid}-${Date.now()}`] },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: `${sub}@example.org`,
          email_verified: true,
          name: `Test ${sub}`,
          preferred_username: sub,
          ...(accounts[sub] || {}),
        };
      },
    };
  },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
