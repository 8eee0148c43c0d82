/**
 * Grafast reads GRAPHILE_ENV when it is first imported and nags on stderr
 * when it is unset; Bastion runs it in production mode unless told
 * otherwise. Imported before anything that imports PostGraphile.
 */
process.env.GRAPHILE_ENV ??= 'production';
