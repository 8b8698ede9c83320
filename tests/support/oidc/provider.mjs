// A real OpenID provider for Pietura's identity tests: the `oidc-provider`
// package with its development login and consent pages (any password is
// accepted for the accounts below; the pages are the provider's own).
//
//   node provider.mjs            # settings from the environment:
//   OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
//   OIDC_ACCOUNTS  JSON {"login": {"name": "...", "groups": ["..."]}, ...}
//
// Prints "oidc-provider listening on <issuer>" once it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT || 41210);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'pietura-test', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID || 'pietura',
    client_secret: process.env.OIDC_CLIENT_SECRET || 'pietura-secret',
    redirect_uris: [process.env.OIDC_REDIRECT_URI || 'http://127.0.0.1/oidc/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  // The groups claim in the ID token itself, as Azure AD / Keycloak put it.
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  cookies: { keys: ['pietura-test-oidc-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: a.name, groups: a.groups || [] };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
